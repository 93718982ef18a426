using System.Text.Json;
using System.Text.Json.Nodes;
using HandlerRuntime.Luns;

namespace HandlerRuntime.Config;

/// <summary>
/// Writes LUN definitions back into the config file, so that a restart brings them back.
/// Only the <c>luns</c> array is replaced; every other setting and its formatting intent
/// stays. The write is atomic (temporary file, then rename).
/// </summary>
public static class ConfigStore
{
    public static void SaveLuns(string path, IReadOnlyList<LunDefinition> luns)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject ?? new JsonObject();
        }
        catch (FileNotFoundException)
        {
            root = new JsonObject();
        }
        var array = new JsonArray();
        foreach (var d in luns)
        {
            var o = new JsonObject { ["name"] = d.Name, ["cfgstring"] = d.Cfgstring };
            if (d.Size > 0) o["size"] = Sizes.Format(d.Size);
            if (d.BlockSize > 0) o["blockSize"] = d.BlockSize;
            if (d.Target is not null) o["target"] = d.Target;
            if (d.Lun is not null) o["lun"] = d.Lun;
            if (!d.WriteCache) o["writeCache"] = false;
            if (d.ReadOnly) o["readOnly"] = true;
            if (d.Removable) o["removable"] = true;
            if (d.PhysicalBlockSize != 0) o["physicalBlockSize"] = d.PhysicalBlockSize;
            array.Add(o);
        }
        // Keep the key where it was: rebuild the object in its original order.
        var rebuilt = new JsonObject();
        var placed = false;
        foreach (var (key, value) in root.ToList())
        {
            root.Remove(key);
            if (key == "luns")
            {
                rebuilt["luns"] = array;
                placed = true;
            }
            else
            {
                rebuilt[key] = value;
            }
        }
        if (!placed)
            rebuilt["luns"] = array;
        var temp = path + ".tmp";
        File.WriteAllText(temp, rebuilt.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(temp, path, overwrite: true);
    }
}
